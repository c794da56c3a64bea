-- Imported denied-party lists. The files are kept verbatim (base64) so the
-- exact list a screening result names by version can be rebuilt later and
-- its matches re-examined. The newest import is the list in force; earlier
-- ones stay as the record of what older results were measured against.

CREATE TABLE screening_lists (
    list_version TEXT PRIMARY KEY,
    source_format TEXT NOT NULL,
    imported_at BIGINT NOT NULL,
    imported_by TEXT NOT NULL,
    entry_count BIGINT NOT NULL,
    skipped_rows BIGINT NOT NULL
);
CREATE INDEX screening_lists_imported_at ON screening_lists (imported_at);

CREATE TABLE screening_list_files (
    list_version TEXT NOT NULL REFERENCES screening_lists (list_version),
    position BIGINT NOT NULL,
    file_role TEXT NOT NULL,
    file_name TEXT NOT NULL,
    contents_base64 TEXT NOT NULL,
    PRIMARY KEY (list_version, position)
);
