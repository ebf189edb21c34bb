"""Working-time calendars (工作日历): working windows, public holidays, make-up days."""
