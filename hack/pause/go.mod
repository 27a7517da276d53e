// The node tier's pause image: the process that holds a pod's namespaces. No dependencies.
module gmsa.test/pause

go 1.26.0
