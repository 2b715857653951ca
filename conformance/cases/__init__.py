"""The case makers: tours of the state graph, the adaptive coverage walk, Hypothesis stateful
programs and parallel cases."""
