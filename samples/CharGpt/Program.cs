using CharGpt;

// Train the character-level GPT as its [Train] declares, then quantise it (`--help` lists the options);
// `generate --prompt "ROMEO:" --length 300` samples from the trained model, printing as it goes.
// `large [options]` trains the 31.6M-parameter LargeGpt instead (two ranks, ZeRO stage 2, bf16; `large --help`).
return args.Length > 0 && args[0] == "large" ? LargeGpt.Run(args[1..]) : ShakespeareGpt.Run(args);
