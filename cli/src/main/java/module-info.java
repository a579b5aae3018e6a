/**
 * The {@code qcow4j} command line: qemu-img's, qemu-io's, qemu-nbd's and e2image's commands over the library's API. Exports
 * nothing; run it with {@code java -jar qcow4j.jar} (the launcher {@code ./qcow4j} runs {@code java -cp qcow4j.jar
 * org.qcow4j.cli.Main}, which skips a second reading of the jar).
 */
module org.qcow4j.cli {
    requires org.qcow4j.core;
    requires org.qcow4j.ext;
    requires org.qcow4j.nbd;
    requires com.fasterxml.jackson.core;
}
