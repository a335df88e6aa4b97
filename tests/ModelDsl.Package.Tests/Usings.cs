global using System;
global using System.Linq;
global using Xunit;
