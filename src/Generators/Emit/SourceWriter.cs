using System.Text;

namespace ModelDsl.Generators.Emit
{
    /// <summary>A minimal indented text writer for emitted C#.</summary>
    internal sealed class SourceWriter
    {
        // Room for a whole generated model (10-18 KB) up front: growing chunk by chunk and joining the chunks at the
        // end was a tenth of the generator's run (allocation and the garbage collections it set off).
        private readonly StringBuilder _sb = new(16 * 1024);
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
