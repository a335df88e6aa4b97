namespace ModelDsl.Runtime.Data;

/// <summary>How the label column of a data file is read.</summary>
public enum LabelKind
{
    /// <summary>Class indices: whole non-negative numbers, stored as int64 (what cross-entropy expects).</summary>
    ClassIndex,

    /// <summary>Regression targets, stored as float32.</summary>
    Float,
}
