using CharGpt;

// Train the character-level GPT as its [Train] declares, then quantise it (`--help` lists the options);
// `generate --prompt "ROMEO:" --length 300` samples from the trained model, printing as it goes.
return ShakespeareGpt.Run(args);
