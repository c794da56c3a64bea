-- Findings: reported safeguard bypasses (jailbreaks). The prompts are kept
-- verbatim as JSON so a finding can be replayed against the safeguards of
-- any later release, and the outcome compared with what was reported.
-- `status` follows the triage workflow; every finding starts `reported`.

CREATE TABLE findings (
    id TEXT PRIMARY KEY,
    model TEXT,
    reporter TEXT NOT NULL,
    severity TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'reported'
        CHECK (status IN ('reported', 'triaged', 'reproduced', 'not_reproduced',
                          'mitigated', 'verified_fixed', 'wont_fix')),
    prompts TEXT NOT NULL,
    notes TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    committed_version BIGINT NOT NULL
);
CREATE INDEX findings_model ON findings (model);
CREATE INDEX findings_created_at ON findings (created_at);
