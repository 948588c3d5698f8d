-- new_views: the events of this batch not stored before, each once.
-- Within the batch, the first copy (lowest offset) wins; across batches,
-- "not exists" skips events that an earlier batch already stored.

drop table if exists new_views;

create temp table new_views as
select event_id, page, user_id, viewed_at, _kafka_offset
from (
  select
    b.*,
    row_number() over (partition by event_id order by _kafka_partition, _kafka_offset) as copy_rank
  from batch as b
  where event_id is not null and page is not null and viewed_at is not null
) as b
where copy_rank = 1
  and not exists (select 1 from page_views as p where p.event_id = b.event_id);
