"""The register (实有人口、实有房屋、实有单位): buildings, houses, households, persons and
organisations — "人进户，户进房，房进格" — collected by grid workers from phones."""
