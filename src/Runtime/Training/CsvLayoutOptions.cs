using System.CommandLine;

namespace ModelDsl.Runtime.Training
{
    /// <summary>
    /// <c>--header</c> and <c>--label-column NAME</c>: the CSV layout options of every command that reads CSV data
    /// (train, evaluate, predict, lr-find), overriding <c>[Train(Header, LabelColumn)]</c> for one run.
    /// </summary>
    internal sealed class CsvLayoutOptions
    {
        public CsvLayoutOptions(TrainingPlan plan)
        {
            Header = new Option<bool>("--header")
            {
                Description = "The CSV files' first row is a header row naming the columns (default: detected, a first row without numbers before a row of numbers)" +
                              (plan.Header == true ? " (declared: on)" : ""),
            };
            LabelColumn = new Option<string?>("--label-column")
            {
                Description = "The label column's name in the header row (default: the last column)" + (plan.LabelColumn.Length > 0 ? $" (declared: {plan.LabelColumn})" : ""),
                HelpName = "NAME",
            };
        }

        public Option<bool> Header { get; }
        public Option<string?> LabelColumn { get; }

        /// <summary>Adds both options to <paramref name="command"/>.</summary>
        public void AddTo(Command command)
        {
            command.Options.Add(Header);
            command.Options.Add(LabelColumn);
        }

        /// <summary>The plan with the command line's layout applied; throws a <see cref="TrainingException"/> (exit 2) for a misuse.</summary>
        public TrainingPlan Apply(TrainingPlan plan, ParseResult parsed)
        {
            bool header = parsed.GetValue(Header);
            string? label = parsed.GetValue(LabelColumn);
            if (label is not null && label.Trim().Length == 0)
                throw new TrainingException("--label-column needs the name of a column of the header row");
            if ((header || label is not null) && plan.IsLanguageModel)
                throw new TrainingException($"{(header ? "--header" : "--label-column")} applies to CSV data, and {plan.ModelName} is a language model trained on a text file");
            return plan with
            {
                // Written on the command line (--header or --header false), it overrides the plan; left out, the plan decides.
                Header = parsed.GetResult(Header) is { Implicit: false } ? header : plan.Header,
                LabelColumn = label ?? plan.LabelColumn,
            };
        }
    }
}
