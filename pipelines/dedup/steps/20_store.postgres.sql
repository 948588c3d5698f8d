-- PostgreSQL's version of 20_store.sql (keep the two in step). PostgreSQL has
-- no date(text): the day is the first 10 characters of sluice's
-- date_trunc('day', ...), which reads ISO-8601 as SQLite's date() does (in
-- UTC). Text that is no timestamp fails the batch on both engines: here in
-- date_trunc, on SQLite at views_daily.day's not null.

-- Append the new events, then count only them: views_daily never sees a
-- duplicate, so adding to it is safe.

insert into page_views (event_id, page, user_id, viewed_at, _kafka_offset)
select event_id, page, user_id, viewed_at, _kafka_offset
from new_views;

insert into views_daily (day, page, views)
select left(date_trunc('day', viewed_at), 10), page, count(*)
from new_views
group by 1, 2
on conflict (day, page) do update set
  views = views_daily.views + excluded.views;
