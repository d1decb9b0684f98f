"""Documents for people and tools: the compare report, fleet merges, the HTML page, charts, msprobe
dumps.
"""
