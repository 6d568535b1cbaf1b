"""Shadow traffic: mirror live requests (``mirror``), replay recorded ones (``replay``,
``logparse``), normalise and diff responses (``diff``, ``noise``, ``rules``), keep the results
(``store``). ``echo`` is a recording upstream for tests and ``tern compare``.

May import ``proxy`` (model, events, adapters); never ``migrate``.
"""
