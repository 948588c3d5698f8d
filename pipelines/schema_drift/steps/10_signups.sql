-- The latest sign-up event per user. `coupon` is not in [columns]: it is
-- read from the raw JSON value, NULL when a message lacks it. json_extract
-- returns the JSON type as it is (a number stays a number), hence the cast.
-- On PostgreSQL, sluice's json_extract returns text, a number as written
-- (2.50 stays 2.50, where SQLite gives 2.5).
-- `discount` is declared REAL: already cast, bad values never get here.

insert into signups (user_id, plan, signed_up_at, coupon, discount, _kafka_timestamp, _kafka_offset)
select
  user_id,
  plan,
  signed_up_at,
  cast(json_extract(_kafka_value, '$.coupon') as text),
  discount,
  _kafka_timestamp,
  _kafka_offset
from (
  select
    *,
    row_number() over (partition by user_id order by _kafka_timestamp desc, _kafka_offset desc) as version_rank
  from batch
  where user_id is not null
) as versions
where version_rank = 1
on conflict (user_id) do update set
  plan             = excluded.plan,
  signed_up_at     = excluded.signed_up_at,
  coupon           = excluded.coupon,
  discount         = excluded.discount,
  _kafka_timestamp = excluded._kafka_timestamp,
  _kafka_offset    = excluded._kafka_offset
where (excluded._kafka_timestamp, excluded._kafka_offset)
   >= (signups._kafka_timestamp, signups._kafka_offset);
