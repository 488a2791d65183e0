"""The HTML report: previews, charts and the page, read from the results of a run."""
