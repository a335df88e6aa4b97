using System.CommandLine;
using ModelDsl.Plans;
using ModelDsl.Runtime.Training;

namespace ModelDsl.Runtime.Inference
{
    /// <summary>
    /// The scaffolding every subcommand beside <c>train</c> shares (evaluate, predict, export, generate, lr-find): the
    /// command, its options in help order, the <c>--model</c> file, <c>--batch-size</c> with its range check, the CSV
    /// layout options (<c>--header</c>, <c>--label-column</c>) applied to the plan, and an action under
    /// <see cref="ModelCommands.Guard"/> (a problem is one line on stderr, exit code 2).
    /// </summary>
    internal sealed class ModelCommandBuilder
    {
        private readonly TrainingPlan _plan;
        private Option<string?>? _model;
        private Option<int>? _batch;
        private CsvLayoutOptions? _csvLayout;
        private bool _csvRowsOnly;

        public ModelCommandBuilder(TrainingPlan plan, string name, string description)
        {
            _plan = plan;
            Command = new Command(name, description);
        }

        /// <summary>The command being built.</summary>
        public Command Command { get; }

        /// <summary>Adds <paramref name="option"/> (after the options added before it) and returns it.</summary>
        public T Add<T>(T option) where T : Option
        {
            Command.Options.Add(option);
            return option;
        }

        /// <summary>Adds the <c>--model PATH</c> option (<see cref="ModelCommands.ModelOption"/>).</summary>
        public ModelCommandBuilder WithModel()
        {
            _model = Add(ModelCommands.ModelOption(_plan));
            return this;
        }

        /// <summary>Adds <c>--batch-size</c>; <see cref="BatchSize"/> reads it, at least 1.</summary>
        public ModelCommandBuilder WithBatchSize(string description, Func<int> defaultValue)
        {
            _batch = Add(new Option<int>("--batch-size") { Description = description, DefaultValueFactory = _ => defaultValue() });
            return this;
        }

        /// <summary>
        /// Adds <c>--header</c> and <c>--label-column</c> (after every other option); the action gets the plan with them
        /// applied. <paramref name="csvRowsOnly"/>: the command reads CSV rows, so a language model is refused
        /// (<see cref="ModelCommands.RejectLanguageModel"/>) before anything else.
        /// </summary>
        public ModelCommandBuilder WithCsvLayout(bool csvRowsOnly = false)
        {
            _csvLayout = new CsvLayoutOptions(_plan);
            _csvRowsOnly = csvRowsOnly;
            return this;
        }

        /// <summary>The model file: <c>--model</c>, or the default run's best checkpoint, or its last one.</summary>
        public string ModelPath(ParseResult parsed, TrainingPlan plan) =>
            ModelCommands.ResolveModel(parsed.GetValue(_model ?? throw new InvalidOperationException("no --model option")), plan);

        /// <summary>The <c>--batch-size</c> value; a <see cref="TrainingException"/> unless it is at least 1.</summary>
        public int BatchSize(ParseResult parsed)
        {
            int b = parsed.GetValue(_batch ?? throw new InvalidOperationException("no --batch-size option"));
            if (!PlanRules.BatchSize.Holds(b)) throw new TrainingException(PlanRules.BatchSize.Message("--batch-size", b));
            return b;
        }

        /// <summary>
        /// Sets the action to <paramref name="body"/>(parsed command line, plan with the CSV layout applied) under
        /// <see cref="ModelCommands.Guard"/>, and returns the command.
        /// </summary>
        public Command Build(Func<ParseResult, TrainingPlan, int> body)
        {
            _csvLayout?.AddTo(Command);
            var layout = _csvLayout;
            bool rowsOnly = _csvRowsOnly;
            Command.SetAction(parsed => ModelCommands.Guard(() =>
            {
                if (rowsOnly) ModelCommands.RejectLanguageModel(_plan, Command.Name);
                return body(parsed, layout is null ? _plan : layout.Apply(_plan, parsed));
            }));
            return Command;
        }
    }
}
