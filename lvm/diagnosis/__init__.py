"""The investigate branch's diagnosis of a finished training run: `evidence.diagnose` recomputes the evidence,
`rules` turns it into ranked findings and a verdict, `render` writes the report with its plots."""
