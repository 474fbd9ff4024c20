"""Regular patterns the policy reasons about: globs and a regex subset as one syntax tree.

Matching (a Python regex emitted from the tree) and analysis (automata built from the
same tree) read one definition, so what `policy diff` proves is what `evaluate` does.
"""
