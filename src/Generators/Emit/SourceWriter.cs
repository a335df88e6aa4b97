using System.Text;

namespace ModelDsl.Generators.Emit
{
    /// <summary>A minimal indented text writer for emitted C#.</summary>
    internal sealed class SourceWriter
    {
        private readonly StringBuilder _sb = new();
        private int _indent;

        public SourceWriter Line(string text = "")
        {
            if (text.Length > 0) _sb.Append(' ', _indent * 4).Append(text);
            _sb.Append('\n');
            return this;
        }

        public SourceWriter Open(string text)
        {
            Line(text);
            Line("{");
            _indent++;
            return this;
        }

        public SourceWriter Close(string suffix = "")
        {
            _indent--;
            Line("}" + suffix);
            return this;
        }

        public override string ToString() => _sb.ToString();
    }
}
