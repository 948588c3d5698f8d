-- Append the new events, then count only them: views_daily never sees a
-- duplicate, so adding to it is safe.
-- PostgreSQL runs 20_store.postgres.sql: it has no date(text).

insert into page_views (event_id, page, user_id, viewed_at, _kafka_offset)
select event_id, page, user_id, viewed_at, _kafka_offset
from new_views;

insert into views_daily (day, page, views)
select date(viewed_at), page, count(*)
from new_views
group by 1, 2
on conflict (day, page) do update set
  views = views_daily.views + excluded.views;
