-- For a new database. A column added here later must also be added to
-- existing databases by hand (docs/cookbook.md, "Schema drift"): CREATE
-- TABLE IF NOT EXISTS leaves an existing table as it is.
create table if not exists signups (
  user_id           text primary key,
  plan              text,
  signed_up_at      text,
  coupon            text,
  discount          real,
  _kafka_timestamp  integer not null,
  _kafka_offset     integer not null
);
