"""Audits of a run: the HTML report (`build_report`), its sections for notebooks
(`section`, `clip_table`), the views they draw (`curate.report.views`, shared with
`curate inspect`) and one sample's lineage (`curate.report.lineage`, for `curate why`)."""

from curate.report.page import Report, build_report, clip_table, section

__all__ = ["Report", "build_report", "clip_table", "section"]
