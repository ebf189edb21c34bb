"""Exchange (对接与共享): what other systems and residents send in and what goes out —
feeds in from other systems (1+N 多源), residents' own declarations (自主申报),
break-the-glass access (紧急授权), events out and open data."""
