// Creates SCRAM users and ACLs on the test broker through Kafka's admin API. Run by
// `cargo xtask kafka start --secure` (xtask/src/secure.rs) as a single-file Java program:
//
//   java -cp '<kafka libs>/*' SecureSetup.java BOOTSTRAP --scram=USER... --acl=PRINCIPAL|TYPE|PREFIX|OP...
//
// The n-th --scram user's password is in the environment as WEIR_SCRAM_PASSWORD_<n> (never on a
// command line, where `ps` shows it). Each user gets SCRAM-SHA-256 and SCRAM-SHA-512 credentials;
// each ACL allows one operation on the resources whose names start with PREFIX.

import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.ScramCredentialInfo;
import org.apache.kafka.clients.admin.ScramMechanism;
import org.apache.kafka.clients.admin.UserScramCredentialAlteration;
import org.apache.kafka.clients.admin.UserScramCredentialUpsertion;
import org.apache.kafka.common.acl.AccessControlEntry;
import org.apache.kafka.common.acl.AclBinding;
import org.apache.kafka.common.acl.AclOperation;
import org.apache.kafka.common.acl.AclPermissionType;
import org.apache.kafka.common.resource.PatternType;
import org.apache.kafka.common.resource.ResourcePattern;
import org.apache.kafka.common.resource.ResourceType;

public class SecureSetup {
    public static void main(String[] args) throws Exception {
        Properties props = new Properties();
        props.put("bootstrap.servers", args[0]);
        // One request per mechanism: a request may alter each user only once.
        List<UserScramCredentialAlteration> sha256 = new ArrayList<>();
        List<UserScramCredentialAlteration> sha512 = new ArrayList<>();
        List<AclBinding> acls = new ArrayList<>();
        int n = 0;
        for (int i = 1; i < args.length; i++) {
            String arg = args[i];
            if (arg.startsWith("--scram=")) {
                String user = arg.substring("--scram=".length());
                String password = System.getenv("WEIR_SCRAM_PASSWORD_" + n++);
                if (password == null) {
                    throw new IllegalArgumentException("no password for " + user);
                }
                sha256.add(new UserScramCredentialUpsertion(user,
                        new ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096), password));
                sha512.add(new UserScramCredentialUpsertion(user,
                        new ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096), password));
            } else if (arg.startsWith("--acl=")) {
                String[] f = arg.substring("--acl=".length()).split("\\|");
                if (f.length != 4) {
                    throw new IllegalArgumentException("bad --acl " + arg);
                }
                acls.add(new AclBinding(
                        new ResourcePattern(ResourceType.valueOf(f[1]), f[2], PatternType.PREFIXED),
                        new AccessControlEntry(f[0], "*", AclOperation.valueOf(f[3]),
                                AclPermissionType.ALLOW)));
            } else {
                throw new IllegalArgumentException("unknown argument " + arg);
            }
        }
        try (Admin admin = Admin.create(props)) {
            admin.alterUserScramCredentials(sha256).all().get(60, TimeUnit.SECONDS);
            admin.alterUserScramCredentials(sha512).all().get(60, TimeUnit.SECONDS);
            admin.createAcls(acls).all().get(60, TimeUnit.SECONDS);
        }
        System.out.println("created " + (sha256.size() + sha512.size()) + " SCRAM credentials and " + acls.size() + " ACLs");
    }
}
