"""The shape of the Lagawi Fest 2022 sales over time: which days and hours sell (pure).

Weights, not counts: the scenario draws days and hours with them. All local
times are WIB (Asia/Jakarta).

* Online: weekends and paydays (25th to 3rd) sell more; the marketplaces' twin
  dates (4.4, 5.5, 6.6) spike; the programme ramps up over its first weeks as
  the mentored IKM learn the channels.
* Ramadan 1443 H (2 April – 1 May 2022): food and drink sell more, most in the last
  ten days (parcel and hampers season), fashion peaks before Lebaran; shopping
  moves to sahur (03–04) and after tarawih (20–23), dips at buka puasa (17–18).
* Idul Fitri (2–3 May 2022) is a trough; the cuti bersama days after it are slow.
* The virtual expo runs in office hours, on weekdays.
* The exhibition at Mall Kota Kasablanka (1–6 June 2022) follows mall hours
  (10:00–22:00), busiest in the evening and on the weekend (4–5 June).
"""

from __future__ import annotations

from datetime import date, timedelta

RAMADAN = (date(2022, 4, 2), date(2022, 5, 1))
IDUL_FITRI = (date(2022, 5, 2), date(2022, 5, 3))
CUTI_BERSAMA = (date(2022, 4, 29), date(2022, 5, 6))
TWIN_DATES = frozenset({date(2022, 4, 4), date(2022, 5, 5), date(2022, 6, 6)})
FOOD = frozenset({"makanan", "minuman"})


def days(start: date, end: date) -> list[date]:
    return [start + timedelta(n) for n in range((end - start).days + 1)]


def online_day_weight(day: date, start: date, end: date, channel: str, category: str) -> float:
    weekday = day.weekday()  # Monday 0
    w = (1.0, 0.95, 0.95, 1.0, 1.05, 1.2, 1.25)[weekday]
    if channel == "virtual_expo":
        w = (1.2, 1.3, 1.3, 1.25, 1.0, 0.45, 0.35)[weekday]
    if day.day >= 25 or day.day <= 3:
        w *= 1.2  # payday
    if day in TWIN_DATES and channel == "marketplace":
        w *= 3.0
    elif day in TWIN_DATES:
        w *= 1.4
    if RAMADAN[0] <= day <= RAMADAN[1]:
        late = day >= RAMADAN[1] - timedelta(days=10)
        if category in FOOD:
            w *= 1.8 if late else 1.3
        elif category == "fashion":
            w *= 1.7 if late else 1.1
        else:
            w *= 1.1
    if IDUL_FITRI[0] <= day <= IDUL_FITRI[1]:
        w *= 0.3
    elif CUTI_BERSAMA[0] <= day <= CUTI_BERSAMA[1] and day > RAMADAN[1]:
        w *= 0.7
    progress = (day - start).days / max(1, (end - start).days)
    ramp = min(1.0, 0.45 + progress * 4)  # the first ~2 weeks: onboarding
    return w * ramp * (0.85 + 0.4 * progress)  # and a growth trend over the programme


def online_hour_weights(day: date, channel: str) -> list[float]:
    if channel == "virtual_expo":
        return [0] * 9 + [0.8, 1.4, 1.2, 0.6, 1.3, 1.1, 0.7, 0.3] + [0] * 7
    w = [0.25, 0.15, 0.1, 0.1, 0.15, 0.3, 0.5, 0.7, 0.8, 0.9, 1.0, 1.1,
         1.3, 1.1, 0.9, 0.85, 0.9, 1.0, 1.1, 1.3, 1.6, 1.5, 1.1, 0.6]
    if RAMADAN[0] <= day <= RAMADAN[1]:
        w[3] *= 6
        w[4] *= 5
        for h in (12, 13, 14):
            w[h] *= 0.7
        w[17] *= 0.6
        w[18] *= 0.5
        for h in (20, 21, 22, 23):
            w[h] *= 1.4
    return w


def expo_day_weight(day: date) -> float:
    return {2: 0.8, 3: 0.85, 4: 1.0, 5: 1.5, 6: 1.6, 0: 0.75}.get(day.weekday(), 1.0)


def expo_hour_weights(day: date) -> list[float]:
    w = [0.0] * 24
    for h, x in {10: 0.4, 11: 0.7, 12: 1.0, 13: 1.0, 14: 0.8, 15: 0.8, 16: 0.9,
                 17: 1.1, 18: 1.3, 19: 1.5, 20: 1.3, 21: 0.7}.items():
        w[h] = x
    return w
