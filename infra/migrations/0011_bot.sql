-- The Telegram bot: its conversation and user state (a restart loses no conversation), and the
-- delivery protocol of the notifications outbox.

CREATE TABLE bot_state (
    scope      text NOT NULL,          -- 'user', or 'conversation:<name>'
    key        text NOT NULL,          -- the Telegram user id, or the conversation key as a JSON array
    data       jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, key)
);

-- What each Telegram user wants to hear about: notices below this level are not sent (levels,
-- lowest first: info, fill, warning, critical). No row: everything.
CREATE TABLE bot_user_settings (
    telegram_user_id bigint PRIMARY KEY,
    notify_level     text NOT NULL DEFAULT 'info' CHECK (notify_level IN ('info', 'fill', 'warning', 'critical')),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- The copy settings /copytrader asked for a profile (sizing, leverage cap, max position, pairs,
-- sides, reverse, slippage, regime guard), applied to every follow the profile makes from the bot
-- (the copy service keeps settings per follow). Values as typed: decimal strings, pair indexes.
CREATE TABLE bot_profile_settings (
    profile_id       bigint PRIMARY KEY REFERENCES copytrader_profiles (id),
    telegram_user_id bigint NOT NULL,
    settings         jsonb NOT NULL,
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- Delivery: a notice is claimed ('sending', committed) right before it is sent and marked 'sent'
-- with Telegram's message id right after. A notice found 'sending' after a crash may or may not
-- have reached the user (the Bot API has no idempotent send): it becomes 'unknown' and is never
-- sent again (at most once); the user is told a notice may be missing. 'skipped': below the
-- user's notification level; 'failed': Telegram refused it for good (blocked bot, bad chat).
ALTER TABLE notifications DROP CONSTRAINT notifications_status_check;
ALTER TABLE notifications ADD CONSTRAINT notifications_status_check
    CHECK (status IN ('pending', 'sending', 'sent', 'failed', 'unknown', 'skipped'));
ALTER TABLE notifications
    ADD COLUMN not_before          timestamptz,   -- after a 429: not before Telegram's retry_after
    ADD COLUMN claimed_by          text,          -- the delivery worker that sends it
    ADD COLUMN claimed_at          timestamptz,
    ADD COLUMN telegram_message_id bigint,
    ADD COLUMN error               text;
CREATE INDEX notifications_in_flight ON notifications (id) WHERE status = 'sending';

-- Wake the delivery worker as soon as the engine writes a notice (it also polls, as a fallback).
CREATE FUNCTION notifications_wake() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('notifications', '');
    RETURN NULL;
END $$;
CREATE TRIGGER notifications_wake AFTER INSERT ON notifications
    FOR EACH STATEMENT EXECUTE FUNCTION notifications_wake();
