-- stg_orders: per order in this batch, the latest event (newest broker
-- timestamp; ties go to the later offset, since events are keyed by order_id
-- and one order lives in one partition), cleaned, and separately the newest
-- event that carried a status. The status of an order is that of its newest
-- event with a status, whichever batch it came in: events without one keep
-- the status the order already had, and the result does not depend on where
-- batch boundaries fall.
-- PostgreSQL runs 10_dedup.postgres.sql, the same with its date functions.

drop table if exists stg_orders;

create temp table stg_orders as
with raw as (
  select
    trim(order_id)                          as order_id,
    customer_id,
    upper(trim(product_id))                 as product_id,
    round(amount, 2)                        as amount,
    upper(trim(currency))                   as currency,
    nullif(lower(trim(status)), '')         as status,
    event_time,
    -- A broker timestamp is trusted unless it is missing (NULL: old
    -- producers, some proxies) or more than a day ahead of now (a producer
    -- clock gone wrong, say year 9999, would otherwise pin its order
    -- against every later event).
    case
      when _kafka_timestamp <= cast(round((julianday('now') - 2440587.5) * 86400000) as integer) + 86400000
      then _kafka_timestamp
    end                                     as trusted_timestamp,
    _kafka_partition,
    _kafka_offset
  from batch
  where order_id is not null and _kafka_value is not null
),
events as (
  -- An event without a trusted timestamp takes the time of the version
  -- before it (the newest trusted one earlier in this batch, else the one
  -- stored, else 0). It then ties with that version and wins by its later
  -- offset: an order lives in one partition, so offsets give the true order
  -- of arrival; and any later event with a trusted timestamp still wins.
  select
    r.order_id, r.customer_id, r.product_id, r.amount, r.currency, r.status, r.event_time,
    coalesce(
      r.trusted_timestamp,
      max(r.trusted_timestamp) over (
        partition by r.order_id order by r._kafka_partition, r._kafka_offset
        rows between unbounded preceding and 1 preceding),
      (select c._kafka_timestamp from orders_curated as c where c.order_id = r.order_id),
      0)                                    as _kafka_timestamp,
    r._kafka_partition,
    r._kafka_offset
  from raw as r
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
