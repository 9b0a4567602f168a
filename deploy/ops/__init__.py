"""Operations several phases share: recording state, locks, moving traffic, running a
colour. Phases read like the deploy procedure; the steps they share live here."""
