-- Governance records: model lifecycle transitions, pre-release reviews with
-- their conditions and evidence, approvals under the two-person rule, the
-- history of each finding's status, and the audit log entries that prove
-- each of them. Rows here are records: nothing updates a transition, an
-- evidence artifact or a finding event once written. A review is filled in
-- as it progresses (access granted, concluded) and an approval is decided
-- once; both refuse a second conclusion or decision.

CREATE TABLE model_transitions (
    id TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    -- NULL when the model's state is recorded for the first time.
    from_state TEXT,
    to_state TEXT NOT NULL,
    rationale TEXT NOT NULL,
    -- JSON array of evidence references (artifact ids, URLs, review ids).
    evidence TEXT NOT NULL,
    review_id TEXT,
    override_reason TEXT,
    -- `api`, `approval`, `config` or `demo`.
    source TEXT NOT NULL,
    actor TEXT NOT NULL,
    approved_by TEXT,
    approval_id TEXT,
    created_at BIGINT NOT NULL,
    -- 1, 2, 3... per model: the order of the history, even within one
    -- millisecond, and a guard against two writers appending the same step.
    step BIGINT NOT NULL,
    UNIQUE (model, step)
);

CREATE TABLE reviews (
    id TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    model_version TEXT,
    reviewing_party TEXT NOT NULL,
    -- `government_evaluator`, `internal_red_team`, `external_red_team` or `other`.
    party_kind TEXT NOT NULL,
    programme TEXT,
    scope TEXT NOT NULL,
    requested_at BIGINT NOT NULL,
    access_granted_at BIGINT,
    -- JSON: the principal and key the reviewers were given, never the secret.
    access TEXT,
    concluded_at BIGINT,
    -- `approve`, `approve_with_conditions` or `reject`; NULL until concluded.
    decision TEXT,
    rationale TEXT,
    concluded_by TEXT,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX reviews_model ON reviews (model, created_at);

CREATE TABLE review_conditions (
    review_id TEXT NOT NULL REFERENCES reviews (id),
    position BIGINT NOT NULL,
    -- JSON, e.g. {"safeguard_profile": "cyber"} or {"tag": "us_persons_only"}.
    condition_json TEXT NOT NULL,
    -- When the condition was applied to the model, if the system enforces it.
    enforced_at BIGINT,
    PRIMARY KEY (review_id, position)
);

CREATE TABLE evidence_artifacts (
    id TEXT PRIMARY KEY,
    review_id TEXT REFERENCES reviews (id),
    finding_id TEXT REFERENCES findings (id),
    name TEXT NOT NULL,
    -- `eval_report`, `findings_replay`, `policy_snapshot` or `document`.
    kind TEXT NOT NULL,
    media_type TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size_bytes BIGINT NOT NULL,
    -- The content, base64, when stored here; otherwise `reference` names
    -- where it is kept and `sha256` pins what it must hash to.
    content_base64 TEXT,
    reference TEXT,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX evidence_artifacts_review ON evidence_artifacts (review_id);
CREATE INDEX evidence_artifacts_finding ON evidence_artifacts (finding_id);

CREATE TABLE approvals (
    id TEXT PRIMARY KEY,
    -- `model_release` or `order_lift`.
    action TEXT NOT NULL,
    target_id TEXT NOT NULL,
    -- JSON: the request to carry out once approved.
    request TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    requested_at BIGINT NOT NULL,
    -- `pending`, `approved` or `rejected`.
    status TEXT NOT NULL,
    decided_by TEXT,
    decided_at BIGINT,
    decision_note TEXT
);
CREATE INDEX approvals_status ON approvals (status, requested_at);

CREATE TABLE finding_events (
    id TEXT PRIMARY KEY,
    finding_id TEXT NOT NULL REFERENCES findings (id),
    from_status TEXT NOT NULL,
    to_status TEXT NOT NULL,
    note TEXT NOT NULL,
    actor TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    -- 1, 2, 3... per finding, as for model transitions.
    step BIGINT NOT NULL,
    UNIQUE (finding_id, step)
);

-- Where each governance event sits in the audit log, so reports can cite
-- the entry (and an inclusion proof can be made for it).
CREATE TABLE governance_audit_refs (
    record_kind TEXT NOT NULL,
    record_id TEXT NOT NULL,
    event TEXT NOT NULL,
    origin TEXT NOT NULL,
    entry_index BIGINT NOT NULL,
    leaf_hash TEXT NOT NULL,
    PRIMARY KEY (record_kind, record_id, event)
);
