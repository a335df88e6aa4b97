using System;
namespace ModelDsl.Runtime.Distributed;

/// <summary>
/// A collective library is missing, is not the one expected, or reported an error. The message names the library
/// and says what to do; <see cref="ProcessGroup.Abort(Exception, int)"/> turns one on any rank into the end of the whole job.
/// </summary>
public sealed class DistributedException : Exception
{
    /// <summary>Creates the exception with a message that says what failed and what to do about it.</summary>
    public DistributedException(string message, Exception? innerException = null)
        : base(message, innerException)
    {
    }
}
