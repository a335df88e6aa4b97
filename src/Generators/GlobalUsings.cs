// The namespaces most of the generator's files open (the linked src/Shared and src/Dsl files keep their own usings:
// the runtime and the DSL compile them without these).
global using System;
global using System.Collections.Generic;
global using System.Globalization;
global using System.Linq;
global using System.Threading;
global using Microsoft.CodeAnalysis;
global using Microsoft.CodeAnalysis.CSharp;
global using Microsoft.CodeAnalysis.CSharp.Syntax;
global using ModelDsl.Generators.Diagnostics;
global using ModelDsl.Generators.Model;
global using ModelDsl.Shapes;
