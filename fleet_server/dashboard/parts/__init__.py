"""What several pages share: the header frame, number formats, charts, live redraws, the viewer's time
zone, availability and CSV export."""
