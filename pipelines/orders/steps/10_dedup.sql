-- stg_orders: per order in this batch, the latest event (newest broker
-- timestamp; ties go to the later offset, since events are keyed by order_id
-- and one order lives in one partition), cleaned, and separately the newest
-- event that carried a status. The status of an order is that of its newest
-- event with a status, whichever batch it came in: events without one keep
-- the status the order already had, and the result does not depend on where
-- batch boundaries fall.

drop table if exists temp.stg_orders;

create temp table stg_orders as
with events as (
  select
    trim(order_id)                          as order_id,
    customer_id,
    upper(trim(product_id))                 as product_id,
    round(amount, 2)                        as amount,
    upper(trim(currency))                   as currency,
    nullif(lower(trim(status)), '')         as status,
    event_time,
    -- The version's time is the broker timestamp, with two exceptions an
    -- analyst can defend: a message without one (NULL: old producers, some
    -- proxies) counts as produced now, so it is the newest version of its
    -- order so far (its offset is later than every version already read);
    -- a timestamp in the future counts as now too, so one bad producer
    -- clock (year 9999) cannot pin an order against every later event.
    min(coalesce(_kafka_timestamp, now_ms.value), now_ms.value) as _kafka_timestamp,
    _kafka_partition,
    _kafka_offset
  from batch,
       (select cast(round((julianday('now') - 2440587.5) * 86400000) as integer) as value) as now_ms
  where order_id is not null and _kafka_value is not null
),
latest as (
  select
    e.*,
    row_number() over (
      partition by order_id
      order by _kafka_timestamp desc, _kafka_partition desc, _kafka_offset desc
    ) as version_rank
  from events as e
),
latest_status as (
  select
    order_id,
    status,
    _kafka_timestamp as status_timestamp,
    _kafka_offset    as status_offset,
    row_number() over (
      partition by order_id
      order by _kafka_timestamp desc, _kafka_partition desc, _kafka_offset desc
    ) as status_rank
  from events
  where status is not null
)
select
  l.order_id,
  l.customer_id,
  l.product_id,
  l.amount,
  l.currency,
  s.status,                                        -- null: no event in this batch had one
  s.status_timestamp,
  s.status_offset,
  l.event_time,
  strftime('%Y-%m-%dT%H:00:00Z', l.event_time)     as event_hour,
  l._kafka_timestamp,
  l._kafka_partition,
  l._kafka_offset
from latest as l
left join latest_status as s on s.order_id = l.order_id and s.status_rank = 1
where l.version_rank = 1;
