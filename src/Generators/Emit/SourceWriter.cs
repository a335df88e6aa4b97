using System.Runtime.CompilerServices;
using System.Text;

namespace ModelDsl.Generators.Emit
{
    /// <summary>A minimal indented text writer for emitted C#.</summary>
    /// <remarks>
    /// A generated model is 10-20 KB of text and a build emits one per model, so the writer allocates little: an
    /// interpolated line (<c>w.Line($"...")</c>) is appended piece by piece into the buffer (<see cref="LineHandler"/>)
    /// instead of being built as a string first, and the buffer is reused from one file to the next on the same
    /// thread, so each file costs only its final string. Allocation was most of the emitter's cost, mostly through the
    /// garbage collections it set off in the middle of the compiler's work.
    /// </remarks>
    internal sealed class SourceWriter
    {
        [ThreadStatic] private static StringBuilder? s_cached;

        private StringBuilder _sb;
        private int _indent;

        public SourceWriter()
        {
            _sb = s_cached ?? new StringBuilder(32 * 1024);
            s_cached = null;
            _sb.Clear();
        }

        public SourceWriter Line(string text = "")
        {
            if (text.Length > 0) _sb.Append(' ', _indent * 4).Append(text);
            _sb.Append('\n');
            return this;
        }

        /// <summary>An interpolated line, written straight into the buffer (see <see cref="LineHandler"/>).</summary>
        public SourceWriter Line([InterpolatedStringHandlerArgument("")] ref LineHandler text)
        {
            // An interpolation that came out empty is an empty line, without indentation (as Line(string) writes it).
            if (_sb.Length == text.Start) _sb.Length -= _indent * 4;
            _sb.Append('\n');
            return this;
        }

        public SourceWriter Open(string text)
        {
            Line(text);
            return OpenBrace();
        }

        /// <summary><see cref="Open(string)"/> for an interpolated line.</summary>
        public SourceWriter Open([InterpolatedStringHandlerArgument("")] ref LineHandler text)
        {
            Line(ref text);
            return OpenBrace();
        }

        private SourceWriter OpenBrace()
        {
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

        /// <summary>The text written; the buffer goes back to the thread for the next file, so call this once, last.</summary>
        public override string ToString()
        {
            string text = _sb.ToString();
            // Only a buffer of a usual size is kept, so one huge model does not pin its buffer for the thread's life.
            if (_sb.Capacity <= 256 * 1024) s_cached = _sb;
            _sb = new StringBuilder();
            return text;
        }

        /// <summary>
        /// Appends an interpolated line's parts to the writer's buffer as the compiler hands them over, after the
        /// indentation. The values are formatted exactly as string interpolation formats them (ToString with the
        /// format, under the current culture).
        /// </summary>
        [InterpolatedStringHandler]
        internal readonly ref struct LineHandler
        {
            private readonly StringBuilder _sb;

            /// <summary>Where the line's text starts (after the indentation).</summary>
            internal int Start { get; }

            public LineHandler(int literalLength, int formattedCount, SourceWriter writer)
            {
                _sb = writer._sb;
                _sb.Append(' ', writer._indent * 4);
                Start = _sb.Length;
            }

            public void AppendLiteral(string value) => _sb.Append(value);

            public void AppendFormatted(string? value) => _sb.Append(value);

            public void AppendFormatted<T>(T value)
            {
                if (value is string s) _sb.Append(s);
                else if (value is not null) _sb.Append(value.ToString());
            }

            public void AppendFormatted<T>(T value, string? format)
            {
                if (value is System.IFormattable f) _sb.Append(f.ToString(format, null));
                else if (value is not null) _sb.Append(value.ToString());
            }
        }
    }
}
