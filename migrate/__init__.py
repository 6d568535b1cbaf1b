"""The nginx front end: lexer, loader, directive table, analyser, grammars, reports and the CLI.

Top layer: may import ``shadow`` and ``proxy``.
"""
