-- The newest reading per device by measurement time: rank within the batch,
-- then upsert only when newer than what is stored. A reading measured
-- earlier never replaces a later one, whatever order they arrive in.

insert into device_state (device_id, celsius, measured_at, measured_ms, _kafka_offset)
select device_id, celsius, to_timestamp(measured_ms), measured_ms, _kafka_offset
from (
  select
    r.*,
    row_number() over (
      partition by device_id
      order by measured_ms desc, _kafka_partition desc, _kafka_offset desc
    ) as newest_rank
  from stg_readings as r
) as ranked
where newest_rank = 1
on conflict (device_id) do update set
  celsius       = excluded.celsius,
  measured_at   = excluded.measured_at,
  measured_ms   = excluded.measured_ms,
  _kafka_offset = excluded._kafka_offset
where excluded.measured_ms > device_state.measured_ms;
