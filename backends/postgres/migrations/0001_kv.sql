-- The versioned key-value store every Portcullis backend implements.
-- Keys compare bytewise (COLLATE "C") so scans page in the same order as
-- SQLite's and Redis's. Versions come from one sequence for the whole store.
CREATE TABLE kv (
    ns      TEXT COLLATE "C"  NOT NULL,
    key     TEXT COLLATE "C"  NOT NULL,
    value   BYTEA             NOT NULL,
    version BIGINT            NOT NULL,
    PRIMARY KEY (ns, key)
);

CREATE SEQUENCE kv_version;
