"""What analysts and partners read: result views, run records, verdicts, reports, hash lists.

``views``: DuckDB over a results directory. ``runs``: one record per job run. ``verdicts``:
analysts' confirmed/rejected. ``report_html``: the static report page. ``hash_formats`` and
``hash_lists``: PDQ / vPDQ / CSV exchange with other tools.
May import: ``transforms.search``, ``transforms.index``, ``transforms.hashing``,
``transforms.media``, ``transforms.io``, ``schemas``.
"""
