"""The load replay (`relais load`): profile, documents, senders, runner, accounting, report."""
