"""One router per protocol the server speaks, each over the one `RewardService`."""
