-- stg_orders: the latest event of each order in this batch, cleaned.
-- Latest means the newest broker timestamp; ties go to the later offset
-- (events are keyed by order_id, so one order lives in one partition).
--
-- An event without a status keeps the order's last known status: the newest
-- status in this batch if it is newer than the stored version, else the
-- stored status, else 'unknown'. That makes the result independent of where
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
    _kafka_timestamp,
    _kafka_partition,
    _kafka_offset
  from batch
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
  coalesce(
    l.status,
    case
      when c.order_id is null
        or (s.status_timestamp, s.status_offset) > (c._kafka_timestamp, c._kafka_offset)
      then s.status
    end,
    c.status,
    'unknown'
  )                                                as status,
  l.event_time,
  strftime('%Y-%m-%dT%H:00:00Z', l.event_time)     as event_hour,
  l._kafka_timestamp,
  l._kafka_partition,
  l._kafka_offset
from latest as l
left join latest_status as s on s.order_id = l.order_id and s.status_rank = 1
left join orders_curated as c on c.order_id = l.order_id
where l.version_rank = 1;
