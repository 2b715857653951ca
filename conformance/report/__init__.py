"""The reports of a run, each a view of its results stream: report.json, junit.xml, report.md,
report.html (with diagrams and lanes), and comparisons of reports."""
