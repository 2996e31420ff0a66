-- Stored events not yet on the Redis stream. A source stores its events and their outbox rows in
-- one transaction; a publisher puts them on the stream in event order and only then deletes the
-- rows, so a crash between the two leaves them here to be published by the next sweep (consumers
-- dedupe by event id). No foreign key: checking it cost a tenth of a bulk ingest; the sweep drops
-- a row whose event is gone instead of publishing it.
CREATE TABLE event_outbox (
    stream      text NOT NULL,
    ts          timestamptz NOT NULL,             -- the event's time: publishing order
    rank        smallint NOT NULL,                -- opens first, then updates, partial closes, closes
    event_id    text NOT NULL,
    enqueued_at timestamptz NOT NULL DEFAULT now(),
    -- One index, in publishing order: the sweep reads and deletes by ranges of it.
    PRIMARY KEY (stream, ts, rank, event_id)
);
