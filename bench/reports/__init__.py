"""Reports: leaderboards (tables, then rendering), comparisons, figures, the HTML report."""
