"""Running a matrix: scenarios in parallel, a virtual GPU machine's scenarios in its guest, shards.
Imports the layers below it (core to report)."""
