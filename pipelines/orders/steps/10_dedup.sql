-- stg_orders: the latest event of each order in this batch, cleaned.
-- Latest means the newest broker timestamp; ties go to the later offset
-- (events are keyed by order_id, so one order lives in one partition).

drop table if exists temp.stg_orders;

create temp table stg_orders as
with ranked as (
  select
    b.*,
    row_number() over (
      partition by order_id
      order by _kafka_timestamp desc, _kafka_partition desc, _kafka_offset desc
    ) as version_rank
  from batch as b
  where order_id is not null and _kafka_value is not null
)
select
  trim(order_id)                                   as order_id,
  customer_id,
  upper(trim(product_id))                          as product_id,
  round(amount, 2)                                 as amount,
  upper(trim(currency))                            as currency,
  coalesce(nullif(lower(trim(status)), ''), 'unknown') as status,
  event_time,
  strftime('%Y-%m-%dT%H:00:00Z', event_time)       as event_hour,
  _kafka_timestamp,
  _kafka_partition,
  _kafka_offset
from ranked
where version_rank = 1;
