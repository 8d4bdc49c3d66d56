"""Cloud side: scenarios, simulator environments, TAC / DTAC / AED training,
baselines and evaluation. Modules that need torch import it themselves; scenario
handling and the environments work without it."""
