"""``relais identity``'s tools: held and blocked patients (read from the identity stage's
table changelog), the operators' commands to the stage, and the reveal audit."""
