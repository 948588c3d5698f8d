-- For a new database. A column added here later must also be added to
-- existing databases by hand (docs/cookbook.md, "Schema drift"): CREATE
-- TABLE IF NOT EXISTS leaves an existing table as it is. bigint and double
-- precision: what SQLite's INTEGER and REAL hold, on both engines
-- (PostgreSQL's integer and real are 4 bytes; SQLite gives these names
-- INTEGER and REAL affinity).
create table if not exists signups (
  user_id           text primary key,
  plan              text,
  signed_up_at      text,
  coupon            text,
  discount          double precision,
  _kafka_timestamp  bigint not null,
  _kafka_offset     bigint not null
);
