-- Orders are immutable records: an order row is never updated. Lifting is
-- its own row in `order_lifts`, referencing the order, so the history of
-- what was in force when can always be reconstructed.

CREATE TABLE orders (
    id TEXT PRIMARY KEY,
    reference TEXT NOT NULL,
    document TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    committed_version BIGINT NOT NULL,
    preview TEXT
);
CREATE INDEX orders_reference ON orders (reference);

CREATE TABLE order_lifts (
    order_id TEXT PRIMARY KEY REFERENCES orders (id),
    lifted_at BIGINT NOT NULL,
    lifted_by TEXT NOT NULL,
    reason TEXT,
    committed_version BIGINT NOT NULL
);

-- What each gateway replica has applied. Written by the replicas, never
-- bumps the store version (a report must not trigger another reload).
CREATE TABLE replicas (
    replica_id TEXT PRIMARY KEY,
    applied_version BIGINT NOT NULL,
    applied_at BIGINT NOT NULL,
    confirmed_at BIGINT NOT NULL,
    started_at BIGINT NOT NULL
);

-- When each replica first enforced (or stopped enforcing) an order.
CREATE TABLE order_applications (
    order_id TEXT NOT NULL,
    replica_id TEXT NOT NULL,
    event TEXT NOT NULL,
    applied_at BIGINT NOT NULL,
    applied_version BIGINT NOT NULL,
    streams_cut BIGINT NOT NULL,
    PRIMARY KEY (order_id, replica_id, event)
);
