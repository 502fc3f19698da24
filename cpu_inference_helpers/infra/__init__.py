"""Infrastructure: latency measurement, freed memory, optional plotting, text tables,
quieting other libraries' logs, all-or-nothing output folders, the CLIs' logging, installed versions."""
