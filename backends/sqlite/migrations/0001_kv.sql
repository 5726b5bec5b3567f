-- The versioned key-value store every Portcullis backend implements.
-- Versions come from one store-wide sequence, so a key that is deleted and
-- created again never reuses a version an old If-Match could still hold.
CREATE TABLE kv (
    ns      TEXT    NOT NULL,
    key     TEXT    NOT NULL,
    value   BLOB    NOT NULL,
    version INTEGER NOT NULL,
    PRIMARY KEY (ns, key)
) WITHOUT ROWID;

CREATE TABLE kv_sequence (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    last INTEGER NOT NULL
);

INSERT INTO kv_sequence (id, last) VALUES (1, 0);
