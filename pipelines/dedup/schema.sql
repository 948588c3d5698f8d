-- bigint: offsets and counts are 64-bit on both engines (PostgreSQL's integer is
-- 4 bytes; SQLite gives bigint the same INTEGER affinity as integer).

-- Each event once, whichever copy arrived first.
create table if not exists page_views (
  event_id       text primary key,
  page           text not null,
  user_id        text,
  viewed_at      text not null,
  _kafka_offset  bigint not null
);

create table if not exists views_daily (
  day    text not null,
  page   text not null,
  views  bigint not null,
  primary key (day, page)
);
