"""Preference datasets: DPO pair formatting and the `rewardmill dpo` pipeline."""
